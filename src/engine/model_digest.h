/* A model file's identity for sharing its GPU weights (model_digest.c). */
#ifndef GS_ENGINE_MODEL_DIGEST_H
#define GS_ENGINE_MODEL_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of p[0, n) under two keys at once, {k[0], k[1]} into out[0]
 * and {k[2], k[3]} into out[1] (the two lanes interleaved in one pass). */
void gs__siphash24_x2(const uint64_t k[4], const void *p, size_t n,
                      uint64_t out[2]);

/* The two lanes under this process's random keys (getrandom, drawn once):
 * equal bytes give equal digests in one process, and nobody outside it can
 * make two files collide (a client may upload a model file). {0, 0} when
 * no random key could be drawn: the caller then shares nothing. */
void gs__model_digest(const void *p, size_t n, uint64_t out[2]);

#endif
