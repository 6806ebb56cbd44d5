"""After training: BLEU/ROUGE of generated answers (`predict`) and multiple-choice benchmarks (`eval`)."""
