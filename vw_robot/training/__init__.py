"""Training: checkpoints, the generic loop (single process or torchrun DDP), and the stages."""
