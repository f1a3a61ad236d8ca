"""Models of the VideoWorld pipeline, one module per concept.

``fsq`` (finite scalar quantization), ``tokenizer`` (frames <-> tokens),
``latent_dynamics`` (clips -> one code per future step), ``sequence_layout`` (frames and codes
as one flat id sequence), ``rotary`` (rotary positions), ``kv_cache`` (keys and values kept
between decoding steps), ``transformer`` (the GPT over that sequence), ``action_head``
(codes or a predicted frame -> a chunk of actions).
"""
