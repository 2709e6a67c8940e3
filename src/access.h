/*-------------------------------------------------------------------------
 *
 * access.h
 *	  Merchant scope: which merchants' accounts and payments a role may
 *	  debit, act on and see.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/access.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYLEDGER_ACCESS_H
#define PAYLEDGER_ACCESS_H

#include "utils/uuid.h"

extern void AccessInit(void);

/* while a transfer, hold, transfer_legs or transfer_many request works */
extern void PlScopeDebits(bool on);

extern bool PlCallerScoped(void);
extern bool PlMerchantVisible(const pg_uuid_t *merchant);
extern void PlRequireMerchant(const pg_uuid_t *merchant, const char *what);
extern void PlCheckDebitScope(const pg_uuid_t *account, bool has_owner, const pg_uuid_t *owner);
extern void PlCheckAccountVisible(const pg_uuid_t *account);
extern void PlCheckTransferVisible(const char *what, const pg_uuid_t *id,
								   const pg_uuid_t *from, const pg_uuid_t *to);
extern Datum PlScopeMerchants(bool *isnull);

#endif							/* PAYLEDGER_ACCESS_H */
