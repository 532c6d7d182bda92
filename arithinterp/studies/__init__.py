"""Studies built from stages: the shipped demo jobs, multiplication, selective fine-tuning."""
