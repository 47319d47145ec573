"""One file per method; each registers a builder ``(task_channels, backbone, cfg) -> nn.Module``.

The module's ``forward(images)`` returns ``{"final": {task: logits}, "aux": {name: {task: logits}}}``
with logits at input resolution, and exposes ``.backbone`` (for the params split in records).
A builder with ``single_task = True`` trains one task per run and provides Δm's references.
Each ``aux`` output gets its task's loss and weight, unless the model names another loss for it in
``aux_losses = {name: {task: fn(logits, target)}}`` (ATRC's depth bins and normal clusters; see
``mtbench/objective.py``).
A model whose forward runs modules without using their output (parameter-parity flags) sets
``find_unused_parameters = True`` so that DDP tolerates it; nothing else should.
"""
