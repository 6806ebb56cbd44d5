"""The checks bench/gpu_check.py runs, one per child process (parity.py: attention and losses;
memory.py: the estimate against real steps, and vLLM predict after training)."""
