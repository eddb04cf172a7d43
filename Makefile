.PHONY: test bench demo
test:
	bash .ci/run
bench:
	.venv/bin/python bench/run_all.py
demo:
	.venv/bin/suitemon demo
