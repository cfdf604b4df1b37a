# The two commands of the README.
.PHONY: figures test setup
setup:
	bash scripts/setup.sh
figures:            ## set up, execute every notebook at full size, regenerate figures/
	bash scripts/main.sh
test:               ## set up, run the test suite (notebooks at smoke size)
	bash scripts/test.sh
