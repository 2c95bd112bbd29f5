"""Retrieval quality on labelled folders: the metrics (:mod:`.retrieval`: recall@k, mAP, MAP@R,
median rank), k-reciprocal re-ranking (:mod:`.rerank`) and ``lookalike evaluate`` with its report
(:mod:`.evaluate`)."""
