"""Integer quantization: calibration, GPTQ int8 and q4."""
