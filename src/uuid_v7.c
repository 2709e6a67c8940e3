/*-------------------------------------------------------------------------
 *
 * uuid_v7.c
 *	  Time-ordered UUIDs (RFC 9562 version 7) for every id payledger makes.
 *
 * 48 bits of Unix milliseconds, then 12 bits that count up within one
 * millisecond in this backend (so ids made by one backend sort in the order
 * they were made), then 62 random bits.
 *
 * On a shard (payledger.shard_id set, 0-255) the last of those random bytes
 * is the shard number instead: a router (scaleout/) sends any call about an
 * id to the shard that made it without looking anything up.  That leaves 54
 * random bits, which with the millisecond and the counter is still far more
 * than one backend can exhaust.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/uuid_v7.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "payledger.h"
#include "util.h"

static uint64 last_ms = 0;
static uint16 last_seq = 0;

void
PlUuidV7(pg_uuid_t *out)
{
	struct timeval tv;
	uint64		ms;
	uint16		seq;

	gettimeofday(&tv, NULL);
	ms = (uint64) tv.tv_sec * 1000 + tv.tv_usec / 1000;

	if (ms <= last_ms)
	{
		/* same millisecond (or the clock stepped back): keep counting */
		ms = last_ms;
		seq = last_seq + 1;
		if (seq > 0x0FFF)
		{
			ms++;
			seq = 0;
		}
	}
	else
		seq = 0;
	last_ms = ms;
	last_seq = seq;

	if (!pg_strong_random(out->data + 8, 8))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bits for a UUID")));

	out->data[0] = (uint8) (ms >> 40);
	out->data[1] = (uint8) (ms >> 32);
	out->data[2] = (uint8) (ms >> 24);
	out->data[3] = (uint8) (ms >> 16);
	out->data[4] = (uint8) (ms >> 8);
	out->data[5] = (uint8) ms;
	out->data[6] = 0x70 | (uint8) (seq >> 8);
	out->data[7] = (uint8) seq;
	out->data[8] = 0x80 | (out->data[8] & 0x3F);
	if (pl_shard_id >= 0)
		out->data[15] = (uint8) pl_shard_id;
}

/*
 * The smallest UUIDv7 minted at or after t (its first 48 bits are the Unix
 * time in milliseconds), or false for a bound that excludes nothing.
 */
bool
PlUuidV7Floor(TimestampTz t, pg_uuid_t *out)
{
	int64		ms;

	if (TIMESTAMP_NOT_FINITE(t))
		return false;
	ms = (t / 1000) + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	if (ms <= 0)
		return false;
	memset(out, 0, sizeof(pg_uuid_t));
	for (int i = 0; i < 6; i++)
		out->data[i] = (uint8) (ms >> (40 - 8 * i));
	return true;
}

Datum
PlUuidV7Datum(void)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	PlUuidV7(u);
	return UUIDPGetDatum(u);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parses the canonical 8-4-4-4-12 form (or 32 bare hex digits) without
 * raising, for values that arrive as text: settings and JSON fields.
 */
bool
PlParseUuid(const char *text, pg_uuid_t *out)
{
	pg_uuid_t	tmp;
	const char *p = text;
	int			len = strlen(text);
	bool		dashed = (len == 36);

	if (len != 36 && len != 32)
		return false;
	for (int i = 0; i < UUID_LEN; i++)
	{
		int			hi,
					lo;

		if (dashed && (i == 4 || i == 6 || i == 8 || i == 10))
		{
			if (*p != '-')
				return false;
			p++;
		}
		hi = hexval(p[0]);
		lo = hexval(p[1]);
		if (hi < 0 || lo < 0)
			return false;
		tmp.data[i] = (uint8) ((hi << 4) | lo);
		p += 2;
	}
	if (out)
		*out = tmp;
	return true;
}

/*
 * payledger.uuid_v7() RETURNS uuid
 *
 * A new time-ordered UUID.
 */
PG_FUNCTION_INFO_V1(uuid_v7);
Datum
uuid_v7(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PlUuidV7Datum());
}

/* The canonical text form of a uuid, for messages and SPI parameters. */
char *
PlUuidText(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum((pg_uuid_t *) u)));
}
