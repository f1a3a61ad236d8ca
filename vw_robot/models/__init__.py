"""Models of the VideoWorld pipeline, one module per concept.

``fsq`` (finite scalar quantization), ``tokenizer`` (frames <-> tokens),
``latent_dynamics`` (clips -> one code per future step).
"""
