/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Shared helpers: uuids, currencies and argument checks (uuid_v7.c, currency.c, args.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UTIL_H
#define UTIL_H

#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* uuid_v7.c */
extern void PlUuidV7(pg_uuid_t *out);
extern Datum PlUuidV7Datum(void);
extern bool PlUuidV7Floor(TimestampTz t, pg_uuid_t *out);
extern bool PlParseUuid(const char *text, pg_uuid_t *out);
extern char *PlUuidText(const pg_uuid_t *u);

/* currency.c */
extern void PlCheckCurrency(const char *code);

/* args.c */
extern void PlRequireArg(FunctionCallInfo fcinfo, int argno, const char *name);
extern void PlCheckAmount(int64 amount);
extern void PlCheckKey(const char *key);
extern void PlRequireKey(const char *function);
extern char *PlKeyArg(FunctionCallInfo fcinfo, int argno, const char *function);
extern Jsonb *PlEmptyJsonb(void);
extern Jsonb *PlJsonbPair(const char *key, const char *value);
extern TimestampTz PlExpiryAfter(TimestampTz now, const Interval *expires_in);
extern void PlTransferResultValues(Datum *values, bool *nulls, const pg_uuid_t *id,
								   const char *status, const char *reason_code,
								   bool replayed);
extern Datum PlTransferResult(FunctionCallInfo fcinfo, const pg_uuid_t *id,
							  const char *status, const char *reason_code,
							  bool replayed);

#endif							/* UTIL_H */
