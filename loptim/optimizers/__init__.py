"""What trains a task: hand-designed baselines and learned optimizers, by name."""
