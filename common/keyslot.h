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

#endif
