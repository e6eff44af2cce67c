# Lets Pyfhel's bundled SEAL build without network access.
#
# Pyfhel's sdist builds Microsoft SEAL with CMake, whose default configuration
# downloads Microsoft GSL, zlib and zstd from GitHub at build time. Package
# registries are the only network our machines (and many production build
# farms) reach, so we switch those optional SEAL dependencies off. They only
# add bounds-checked spans and compressed serialisation; CryptoRec never asks
# SEAL for compression (see libcryptorec HE notes), so nothing is lost.
#
# Used by setting CMAKE_TOOLCHAIN_FILE to this file's absolute path when pip
# builds Pyfhel (see scripts/install.sh).
set(SEAL_USE_MSGSL OFF CACHE BOOL "no network: skip Microsoft GSL" FORCE)
set(SEAL_USE_ZLIB OFF CACHE BOOL "no network: skip zlib compression" FORCE)
set(SEAL_USE_ZSTD OFF CACHE BOOL "no network: skip zstd compression" FORCE)
