"""One linear entry point per pipeline stage; `cft <stage>` and dvc.yaml call these."""
