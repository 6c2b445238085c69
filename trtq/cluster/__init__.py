"""Scale-out on Ray (`--ray [ADDRESS]`, the optional extra trtq[ray]): the same results as one process.

    ray_runtime   start or join a Ray instance, size the workers, run tasks under one progress bar,
                  turn a task's failure into trtq's own one-line error, cancel on Ctrl-C
    calibration   calibration data in shards across workers (one ONNX Runtime session each), the
                  observers merged exactly on the driver: the cache is byte-identical to one process
    tasks         the accuracy search's measurements (sensitivity, fallback trials) as parallel
                  tasks, the FP32 reference outputs shared once through the object store

Ray is imported only when `--ray` is given; without it the error says `pip install 'trtq[ray]'` (exit 3).
"""
