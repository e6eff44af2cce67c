"""CryptoRec: a recommender whose predictions can be computed on encrypted ratings.

Pure library code (numpy/scipy maths, HE kernels); no gRPC or Redis here.
"""

__version__ = "0.1.0"
