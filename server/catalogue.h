/* catalogue.h - the device catalogue (--devices FILE): which devices exist,
 * with optional metadata. With a catalogue, unknown devices are refused. */
#ifndef CATALOGUE_H
#define CATALOGUE_H

#include <stddef.h>

struct catalogue_device {
    char *name;
    char *description;       /* NULL if none */
    double preempt_grace_s;  /* < 0: the default (--preempt-grace) */
    double lock_delay_s;     /* < 0: the default (--lock-delay) */
};

/* Loads FILE (JSON, or one name per line with key=value metadata). On
 * success replaces the catalogue and returns 0; on error keeps the old one,
 * writes a message to err and returns -1. */
int catalogue_load(const char *path, char *err, size_t errlen);
/* Parses catalogue text (exposed for tests and fuzzing); same contract. */
int catalogue_parse(const char *text, size_t len, char *err, size_t errlen);
void catalogue_free(void);
/* 1 when a catalogue is loaded. */
int catalogue_active(void);
/* The device, or NULL (also when no catalogue is loaded). */
const struct catalogue_device *catalogue_find(const char *name);
/* Devices in name order. */
size_t catalogue_count(void);
const struct catalogue_device *catalogue_at(size_t i);

#endif
