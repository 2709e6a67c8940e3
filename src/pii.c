/*-------------------------------------------------------------------------
 *
 * pii.c
 *	  Keeping card data out of the ledger and masking personal data.
 *
 * A PAN is 13 to 19 digits that pass the Luhn check, written plain or in
 * groups split by single spaces or dashes, and not glued to letters: digit
 * runs inside an alphanumeric token (hex ids, random keys) would otherwise
 * refuse one random key in a thousand.  A UUID in its canonical text form
 * (8-4-4-4-12 hex digits) is never a PAN either, wherever it stands: its
 * dash-separated digit groups can make a Luhn-valid run (one random UUID
 * key in a few thousand).  Text and JSON metadata (keys,
 * strings and integral numbers, at any depth) are scanned before anything
 * is written, and keys that name card secrets (cvv, cvc, pan, card_number,
 * ...) are refused outright.  Error messages never repeat the offending
 * value and keep the statement out of the server log (errhidestmt), so a
 * PAN cannot leak into the log through the error either.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/pii.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "payledger.h"
#include "util.h"
#include "pii.h"

#define PAN_MIN_DIGITS	13
#define PAN_MAX_DIGITS	19
#define MAX_GROUPS		64
/* a UUID as text: 32 hex digits in groups of 8-4-4-4-12, 4 dashes */
#define UUID_TEXT_LEN	36

static bool
luhn_ok(const char *digits, int n)
{
	int			sum = 0;

	for (int i = 0; i < n; i++)
	{
		int			d = digits[n - 1 - i] - '0';

		if (i % 2 == 1)
		{
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/*
 * Does one run of digit groups (digits joined by single separators) hold a
 * PAN?  Candidates start and end on group boundaries, so "4111 1111 1111
 * 1111 2030" is caught while a long plain reference number is not.
 */
static bool
run_has_pan(const char *digits, const int *group_len, int ngroups)
{
	int			start = 0;

	for (int i = 0; i < ngroups; start += group_len[i], i++)
	{
		int			n = 0;

		for (int j = i; j < ngroups; j++)
		{
			n += group_len[j];
			if (n > PAN_MAX_DIGITS)
				break;
			if (n >= PAN_MIN_DIGITS && luhn_ok(digits + start, n))
				return true;
		}
	}
	return false;
}

/*
 * Does a UUID in canonical text form (8-4-4-4-12 hex digits, either case)
 * start at s[i], standing apart from letters and digits around it?
 */
static bool
uuid_at(const char *s, int len, int i)
{
	static const int group_end[] = {8, 13, 18, 23, UUID_TEXT_LEN};
	int			g = 0;

	if (len - i < UUID_TEXT_LEN || (i > 0 && isalnum((unsigned char) s[i - 1])))
		return false;
	for (int k = 0; k < UUID_TEXT_LEN; k++)
	{
		if (k == group_end[g])
		{
			if (s[i + k] != '-')
				return false;
			g++;
		}
		else if (!isxdigit((unsigned char) s[i + k]))
			return false;
	}
	return i + UUID_TEXT_LEN == len || !isalnum((unsigned char) s[i + UUID_TEXT_LEN]);
}

static bool
text_has_pan(const char *s, int len)
{
	int			i = 0;

	while (i < len)
	{
		char		digits[MAX_GROUPS * 8];
		int			group_len[MAX_GROUPS];
		int			ngroups = 0;
		int			ndigits = 0;

		int			start = i;

		if (uuid_at(s, len, i))
		{
			i += UUID_TEXT_LEN;
			continue;
		}
		if (!isdigit((unsigned char) s[i]))
		{
			i++;
			continue;
		}
		/* a digit run inside a word (a hex token, a reference) is no PAN */
		if (start > 0 && isalpha((unsigned char) s[start - 1]))
		{
			while (i < len && isalnum((unsigned char) s[i]))
				i++;
			continue;
		}
		/* collect one run of groups */
		while (i < len && ngroups < MAX_GROUPS)
		{
			int			g = 0;

			while (i < len && isdigit((unsigned char) s[i]))
			{
				if (ndigits < (int) sizeof(digits))
					digits[ndigits++] = s[i];
				g++;
				i++;
			}
			group_len[ngroups++] = g;
			if (ndigits >= (int) sizeof(digits))
				break;
			if (i + 1 < len && (s[i] == ' ' || s[i] == '-') &&
				isdigit((unsigned char) s[i + 1]))
				i++;
			else
				break;
		}
		if (ndigits >= PAN_MIN_DIGITS && ndigits < (int) sizeof(digits) &&
			!(i < len && isalpha((unsigned char) s[i])) &&
			run_has_pan(digits, group_len, ngroups))
			return true;
		if (ndigits >= (int) sizeof(digits))
		{
			/* a pathological digit run: skip the rest of it */
			while (i < len && (isdigit((unsigned char) s[i]) || s[i] == ' ' || s[i] == '-'))
				i++;
		}
	}
	return false;
}

static void
reject_pan(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAYLEDGER_SENSITIVE_DATA),
			 errmsg("%s looks like it holds a card number", what),
			 errdetail("Card numbers (PAN) and card security codes must never be stored in the ledger."),
			 errhint("Store a token from your card vault instead."),
			 errhidestmt(true)));
}

void
PlRejectPanInText(const char *what, const char *text)
{
	if (text != NULL && text_has_pan(text, strlen(text)))
		reject_pan(what);
}

/*
 * Checks the metadata argument of a call: no larger than
 * payledger.max_metadata_bytes as jsonb text (22023), no card number
 * (PY006).
 */
void
PlCheckMetadata(const char *what, Jsonb *jb)
{
	if (jb != NULL && JB_ROOT_COUNT(jb) > 0)
	{
		char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		size_t		len = strlen(text);

		pfree(text);
		if (len > (size_t) pl_max_metadata_bytes)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s is too large", what),
					 errdetail("It is %zu bytes as text; payledger.max_metadata_bytes allows %d.",
							   len, pl_max_metadata_bytes)));
	}
	PlRejectPanInJsonb(what, jb);
}

/* keys that name card secrets, compared without case, '_' or '-' */
static bool
forbidden_key(const char *key, int len)
{
	static const char *const names[] = {
		"cvv", "cvv2", "cvc", "cvc2", "cid", "csc", "pan", "cardnumber",
		"cardno", "securitycode", "cardsecuritycode", "cardverificationvalue",
		"primaryaccountnumber", "creditcardnumber", "ccnumber"
	};
	char		norm[64];
	int			n = 0;

	for (int i = 0; i < len; i++)
	{
		if (key[i] == '_' || key[i] == '-' || key[i] == ' ')
			continue;
		if (n >= (int) sizeof(norm) - 1)
			return false;
		norm[n++] = pg_ascii_tolower((unsigned char) key[i]);
	}
	norm[n] = '\0';
	for (int i = 0; i < (int) lengthof(names); i++)
		if (strcmp(norm, names[i]) == 0)
			return true;
	return false;
}

void
PlRejectPanInJsonb(const char *what, Jsonb *jb)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (jb == NULL)
		return;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			if (forbidden_key(v.val.string.val, v.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_PAYLEDGER_SENSITIVE_DATA),
						 errmsg("%s has a card security field", what),
						 errdetail("Keys such as cvv, cvc, pan and card_number are refused."),
						 errhint("Store a token from your card vault instead."),
						 errhidestmt(true)));
			if (text_has_pan(v.val.string.val, v.val.string.len))
				reject_pan(what);
		}
		else if (tok == WJB_VALUE || tok == WJB_ELEM)
		{
			if (v.type == jbvString)
			{
				if (text_has_pan(v.val.string.val, v.val.string.len))
					reject_pan(what);
			}
			else if (v.type == jbvNumeric)
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	 NumericGetDatum(v.val.numeric)));

				if (text_has_pan(s, strlen(s)))
					reject_pan(what);
				pfree(s);
			}
		}
	}
}

/*
 * IPv4 keeps its first two octets ("192.168.xxx.xxx"), IPv6 its first three
 * groups.  NULL for text that is not an address.
 */
char *
PlMaskIp(const char *ip)
{
	unsigned char buf[16];

	if (inet_pton(AF_INET, ip, buf) == 1)
		return psprintf("%u.%u.xxx.xxx", buf[0], buf[1]);
	if (inet_pton(AF_INET6, ip, buf) == 1)
		return psprintf("%x:%x:%x:xxxx:xxxx:xxxx:xxxx:xxxx",
						(buf[0] << 8) | buf[1], (buf[2] << 8) | buf[3],
						(buf[4] << 8) | buf[5]);
	return NULL;
}

void
PlSha256(const char *data, size_t len, uint8 *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, out, PL_SHA256_LEN) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

char *
PlSha256Hex(const char *text)
{
	uint8		digest[PL_SHA256_LEN];
	char	   *hex = palloc(PL_SHA256_LEN * 2 + 1);

	PlSha256(text, strlen(text), digest);
	hex_encode((const char *) digest, PL_SHA256_LEN, hex);
	hex[PL_SHA256_LEN * 2] = '\0';
	return hex;
}

static bool
is_local_char(char c)
{
	return isalnum((unsigned char) c) || c == '.' || c == '_' || c == '%' ||
		c == '+' || c == '-';
}

static bool
is_domain_char(char c)
{
	return isalnum((unsigned char) c) || c == '.' || c == '-';
}

/*
 * Masks every e-mail address in a string: "eve@example.com" becomes
 * "e***@***.com"; the rest of the text is kept.  NULL when there is none.
 */
static char *
mask_emails(const char *s, int len, int *outlen)
{
	StringInfoData out;
	int			copied = 0;
	bool		any = false;

	initStringInfo(&out);
	for (int at = 0; at < len; at++)
	{
		int			l,
					r,
					dot;

		if (s[at] != '@')
			continue;
		for (l = at; l > copied && is_local_char(s[l - 1]); l--)
			;
		for (r = at + 1; r < len && is_domain_char(s[r]); r++)
			;
		while (r > at + 1 && (s[r - 1] == '.' || s[r - 1] == '-'))
			r--;
		for (dot = r - 1; dot > at && s[dot] != '.'; dot--)
			;
		if (l == at || dot <= at + 1 || r - dot - 1 < 2)
			continue;
		{
			bool		tld_ok = true;

			for (int i = dot + 1; i < r; i++)
				if (!isalpha((unsigned char) s[i]))
					tld_ok = false;
			if (!tld_ok)
				continue;
		}
		appendBinaryStringInfo(&out, s + copied, l - copied);
		appendStringInfoChar(&out, s[l]);
		appendStringInfoString(&out, "***@***.");
		appendBinaryStringInfo(&out, s + dot + 1, r - dot - 1);
		copied = r;
		at = r - 1;
		any = true;
	}
	if (!any)
	{
		pfree(out.data);
		return NULL;
	}
	appendBinaryStringInfo(&out, s + copied, len - copied);
	*outlen = out.len;
	return out.data;
}

/*
 * Returns text with every e-mail address masked, for free text that the
 * ledger stores next to its audit rows (freeze and refund reasons); the same
 * pointer when there is nothing to mask.
 */
char *
PlMaskText(char *text)
{
	int			newlen;
	char	   *masked;

	if (text == NULL || strchr(text, '@') == NULL)
		return text;
	masked = mask_emails(text, strlen(text), &newlen);
	return masked ? masked : text;
}

/*
 * Returns metadata with every e-mail address in its keys and strings
 * masked; the same pointer when there is nothing to mask.
 */
Jsonb *
PlMaskJsonb(Jsonb *jb)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;

	if (jb == NULL || memchr(VARDATA(jb), '@', VARSIZE(jb) - VARHDRSZ) == NULL)
		return jb;
	if (JB_ROOT_IS_SCALAR(jb))
		return jb;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM) && v.type == jbvString)
		{
			int			newlen;
			char	   *masked = mask_emails(v.val.string.val, v.val.string.len, &newlen);

			if (masked)
			{
				v.val.string.val = masked;
				v.val.string.len = newlen;
			}
		}
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}
