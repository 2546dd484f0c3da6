"""Model files: safetensors/llama2.c weights, HF config, tokenizer, float reference."""
