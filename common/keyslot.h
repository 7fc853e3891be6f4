/* keyslot: the Redis Cluster hash slot of a key or channel name: CRC16
 * (XMODEM) of the key, or of the part inside the first non-empty {...},
 * modulo 16384. Our names put the account in braces, so all of an
 * account's keys and its channel share one slot. */
#ifndef NOTIFY_KEYSLOT_H
#define NOTIFY_KEYSLOT_H

#include <stddef.h>
#include <stdint.h>

#define KEYSLOT_COUNT 16384

unsigned keyslot(const char *key, size_t len);

/* Characters of each slot's tag in keyslot_tags. */
#define KEYSLOT_TAG_LEN 4

/* Fills out (KEYSLOT_COUNT * KEYSLOT_TAG_LEN bytes, no NUL) with a hash tag
 * per slot: out[slot * 4 .. slot * 4 + 3] is the first string of four
 * characters of [0-9a-z] whose slot is slot, so "<name>:{<tag>}" lands in
 * it. The same on every machine; takes about 1.7 million CRC16s. Keys per
 * slot (the deadlines of README.md "Acknowledgements and the undelivered
 * outbox") are named with it. */
void keyslot_tags(char *out);

#endif
