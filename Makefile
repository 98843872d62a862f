# MyPortal: the commands the README gives. Each one works by itself on a fresh Debian machine.
#   make run     the app (web + worker + scheduler, and a Redis if none answers); Ctrl-C stops it
#   make test    the test suite (pytest); extra pytest arguments: make test ARGS="-k imap -x"
#   make bench   the ingest benchmark against a real Dovecot (bench/ingest.py; installs dovecot-imapd)
#   make bootstrap   only the .venv and requirements (make test-deps: plus apt packages for tests)

SHELL := /bin/bash
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test bench bootstrap test-deps

help:
	@sed -n '2,5p' $(firstword $(MAKEFILE_LIST)) | sed 's/^#//'

run:
	@bash scripts/run.sh

test:
	@bash scripts/test.sh $(ARGS)

bench: test-deps
	.venv/bin/python bench/ingest.py

bootstrap:
	@bash scripts/bootstrap.sh

test-deps:
	@bash scripts/bootstrap.sh --test-deps
