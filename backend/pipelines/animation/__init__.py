"""Talking-head animation: our own SadTalker inference (plain PyTorch, official checkpoints).

    pipeline.py         AnimationPipeline: the Pipeline contract, progress and cancel
    checkpoint_files.py official file names, which a job needs, what is missing (no torch)
    checkpoints.py      prefix -> network, strict loading
    face.py             BlazeFace + face mesh (LiteRT), 68 points, crop / resize / full, 3DMM alignment
    audio.py            16 kHz audio -> one 80x16 mel window per 25 fps frame
    coeffs.py           3DMM coefficients, ExpNet, PoseVAE, blinks, smoothing (seeded)
    render.py           MappingNet + keypoints + generator, batch by batch, source once per job
    fast_generator.py   exact rewrites of the generator that cut FLOPs and peak memory
    video.py            PyAV H.264 + AAC MP4, written batch by batch
    networks/           the networks, one module per family, official state-dict layout
"""
