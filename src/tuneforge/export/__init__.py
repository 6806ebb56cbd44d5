"""`tuneforge export`: merge adapters into the base model and save a model that runs without tuneforge
(safetensors shards, tokenizer with a chat template, generation_config that stops at the template's
stop tokens), optionally quantized."""
