/*-------------------------------------------------------------------------
 *
 * pii.h
 *	  Card numbers refused, personal data masked or hashed (pii.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/pii.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PII_H
#define PII_H

#include "utils/jsonb.h"

extern void PlRejectPanInText(const char *what, const char *text);
extern void PlRejectPanInJsonb(const char *what, Jsonb *jb);
extern void PlCheckMetadata(const char *what, Jsonb *jb);
extern char *PlMaskIp(const char *ip);
extern Jsonb *PlMaskJsonb(Jsonb *jb);
extern char *PlMaskText(char *text);
extern char *PlSha256Hex(const char *text);
extern void PlSha256(const char *data, size_t len, uint8 *out);

#endif							/* PII_H */
