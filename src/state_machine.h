/*-------------------------------------------------------------------------
 *
 * state_machine.h
 *	  Transition checks of state machines (state_machine.c).
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/state_machine.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef STATE_MACHINE_H
#define STATE_MACHINE_H

extern void PlCheckTransition(const char *machine, const char *from, const char *to);

#endif							/* STATE_MACHINE_H */
