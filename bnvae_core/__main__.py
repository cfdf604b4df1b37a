"""``python -m bnvae_core`` and the ``bnvae`` command: the thread policy first, then the CLI."""
from .threads import prefer_passive_wait


def main() -> int:
    prefer_passive_wait()          # before torch is imported (bnvae_core.threads)
    from .cli.main import main as cli_main
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
