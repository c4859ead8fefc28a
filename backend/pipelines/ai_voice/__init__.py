"""AI-generated-voice detection: AST on torch (reference) or ONNX Runtime (lean).

    detector.py   AIVoiceDetector: which labels mean synthetic, softmax or sigmoid, aggregation
    ast_torch.py  transformers' ASTForAudioClassification and its feature extractor
    ast_onnx.py   the exported classifier, numpy Kaldi filterbank
"""
