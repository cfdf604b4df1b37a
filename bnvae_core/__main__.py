"""``python -m bnvae_core`` and the ``bnvae`` command: the thread policy first, then the CLI."""
import sys

from .threads import prefer_passive_wait


def main() -> int:
    prefer_passive_wait()          # before torch is imported (bnvae_core.threads)
    try:
        from .cli.main import main as cli_main      # torch, pandas: seconds on a busy machine
    except KeyboardInterrupt:
        print("interrupted while starting up: nothing was done", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
