"""The label value that never trains: the position is masked out of the loss.

-100 is what transformers' cross-entropy (`ignore_index`), its collators and trl all use; every
tuneforge module that writes or reads labels takes it from here.
"""

IGNORE_INDEX = -100
