#!/bin/bash
# LLaMA Pro block expansion: 8 new blocks, each an identity copy of the block before it (its o_proj and
# down_proj zeroed), so the expanded model answers exactly as the original until trained.
tuneforge expand \
    --model_name_or_path meta-llama/Meta-Llama-3-8B-Instruct \
    --output_dir models/llama3-8b-instruct-pro \
    --num_expand 8
