"""Azure ML: submit train.py as a command job (one node or DDP) and download its run folder."""
