"""Scale-out on existing engines (the ``cluster`` extra): Ray embedding into Parquet shards, loading
shards into an index, and Milvus as a vector store. The one-machine path never imports this package."""
