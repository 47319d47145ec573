"""One file per method; each registers a builder ``(task_channels, backbone, cfg) -> nn.Module``.

The module's ``forward(images)`` returns ``{"final": {task: logits}, "aux": {name: {task: logits}}}``
with logits at input resolution, and exposes ``.backbone`` (for the params split in records).
A builder with ``single_task = True`` trains one task per run and provides Δm's references.
A model whose forward runs modules without using their output (parameter-parity flags) sets
``find_unused_parameters = True`` so that DDP tolerates it; nothing else should. ``record_notes``
(a list of strings) are copied into the run record and shown under the method's leaderboard table.
"""
