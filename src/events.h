/*-------------------------------------------------------------------------
 *
 * events.h
 *	  The outbox: delivery eras and wake-ups of listeners (events.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTS_H
#define EVENTS_H

#include "access/transam.h"

extern void EventsInit(void);
extern void PlNotifyEvents(void);
extern int32 PlCurrentEra(void);
extern FullTransactionId PlEventKey(void);

#endif							/* EVENTS_H */
