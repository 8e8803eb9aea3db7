/* ids.h - random identifiers: lock keys, booking ids, broker, session and
 * connection ids (version-4 UUIDs, RFC 9562). */
#ifndef IDS_H
#define IDS_H

/* A new random UUID as 36 lower-case characters and a NUL. The bytes come
 * from the kernel's generator (getrandom), read 4 KiB at a time; aborts if
 * it cannot be read (a lock key must never be guessable). */
void ids_uuid4(char out[37]);

#endif
