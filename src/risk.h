/*-------------------------------------------------------------------------
 *
 * risk.h
 *	  The risk hook called by authorize_payment (risk.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/risk.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RISK_H
#define RISK_H

#include "access/htup.h"
#include "access/tupdesc.h"

extern bool PlRiskSaysNo(HeapTuple payment, TupleDesc desc);

#endif							/* RISK_H */
