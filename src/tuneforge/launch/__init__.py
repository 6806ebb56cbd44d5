"""Several processes for one run: torchrun started for the user (as `FORCE_TORCHRUN=1 llamafactory-cli train`
does), DeepSpeed in one process, Ray Train's TorchTrainer (`USE_RAY=1`), and data preparation one rank at
a time. `launch.entry.launch_elsewhere` is the one decision `tuneforge train` asks for."""
