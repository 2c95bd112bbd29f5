"""The embedded index, one folder: the SQLite catalog (:mod:`.store`, the source of truth), the
vector cache derived from it (:mod:`.vector_cache`), the pipeline that makes it match a folder
(:mod:`.indexer`) and the approximate-nearest-neighbour file kept in step with it (:mod:`.approximate`);
:mod:`.embedded` offers it as a :class:`~.collection.Collection`, the protocol through which
:class:`~lookalike.api.Index` reaches any collection of images (a Milvus one: :mod:`lookalike.cluster.collection`)."""
