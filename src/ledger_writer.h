/*-------------------------------------------------------------------------
 *
 * ledger_writer.h
 *	  Group commit: the ledger writer behind submit_transfer().
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/ledger_writer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYLEDGER_LEDGER_WRITER_H
#define PAYLEDGER_LEDGER_WRITER_H

#include "postgres.h"

extern void LedgerWriterInit(void);

#endif							/* PAYLEDGER_LEDGER_WRITER_H */
