/*-------------------------------------------------------------------------
 *
 * layouts.h
 *	  Column numbers of the tables payledger reads and writes without the
 *	  executor (direct.c), in the style of the catalog headers: Anum_<table>_<column>
 *	  is the 1-based attribute number, Natts_<table> the column count,
 *	  Inum_<index>_<column> a column's number in an index that direct.c scans.
 *
 * These must match the extension's SQL exactly; direct.c checks each table
 * against its layout when a backend first opens it and refuses a table
 * that differs (a column, trigger, rule, constraint or index payledger did
 * not make).  The audit log's columns are named Anum_audit_*.
 *
 * Copyright (c) 2026, payledger authors
 *
 * IDENTIFICATION
 *	  src/layouts.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef LAYOUTS_H
#define LAYOUTS_H

/* payledger.accounts */
#define Anum_accounts_id				1
#define Anum_accounts_currency			2
#define Anum_accounts_kind				3
#define Anum_accounts_min_balance		4
#define Anum_accounts_status			5
#define Anum_accounts_balance			6
#define Anum_accounts_pending_debits	7
#define Anum_accounts_pending_credits	8
#define Anum_accounts_version			9
#define Anum_accounts_metadata			10
#define Anum_accounts_frozen_reason		11
#define Anum_accounts_created_at		12
#define Anum_accounts_updated_at		13
#define Anum_accounts_has_limits		14
#define Anum_accounts_owner_id			15	/* since 0.3.0 */
#define Natts_accounts					15
#define Natts_accounts_0_2				14	/* before 0.3.0 added owner_id */

/* payledger.entries */
#define Anum_entries_account_id			1
#define Anum_entries_account_version	2
#define Anum_entries_transfer_id		3
#define Anum_entries_amount				4
#define Anum_entries_balance_after		5
#define Anum_entries_created_at			6
#define Natts_entries					6

/* payledger.holds */
#define Anum_holds_id				1
#define Anum_holds_from_account		2
#define Anum_holds_to_account		3
#define Anum_holds_amount			4
#define Anum_holds_currency			5
#define Anum_holds_status			6
#define Anum_holds_expires_at		7
#define Anum_holds_posted_amount	8
#define Anum_holds_idempotency_key	9
#define Anum_holds_metadata			10
#define Anum_holds_created_at		11
#define Anum_holds_updated_at		12
#define Anum_holds_correlation_id	13
#define Natts_holds					13

/* payledger.idempotency_keys */
#define Anum_idempotency_keys_scope			1
#define Anum_idempotency_keys_key			2
#define Anum_idempotency_keys_operation		3
#define Anum_idempotency_keys_request_hash	4
#define Anum_idempotency_keys_result_id		5
#define Anum_idempotency_keys_status		6
#define Anum_idempotency_keys_reason_code	7
#define Anum_idempotency_keys_created_at	8
#define Natts_idempotency_keys				8
/* its primary key idempotency_keys_pkey (scope, key): index column numbers */
#define Inum_idempotency_keys_pkey_scope	1
#define Inum_idempotency_keys_pkey_key		2

/* payledger.legs (since 0.3.0) */
#define Anum_legs_transfer_id		1
#define Anum_legs_leg				2
#define Anum_legs_from_account		3
#define Anum_legs_to_account		4
#define Anum_legs_amount			5
#define Natts_legs					5

/* payledger.payment_audit_log */
#define Anum_audit_id						1
#define Anum_audit_event_id					2
#define Anum_audit_correlation_id			3
#define Anum_audit_idempotency_key			4
#define Anum_audit_event_time				5
#define Anum_audit_server_time				6
#define Anum_audit_event_type				7
#define Anum_audit_previous_state			8
#define Anum_audit_new_state				9
#define Anum_audit_actor_type				10
#define Anum_audit_actor_id					11
#define Anum_audit_payment_id				12
#define Anum_audit_account_id				13
#define Anum_audit_counterparty_account_id	14
#define Anum_audit_amount_cents				15
#define Anum_audit_currency					16
#define Anum_audit_merchant_id				17
#define Anum_audit_customer_id				18
#define Anum_audit_ip_address				19
#define Anum_audit_user_agent_hash			20
#define Anum_audit_device_id				21
#define Anum_audit_success					22
#define Anum_audit_reason_code				23
#define Anum_audit_error_message			24
#define Anum_audit_metadata					25
#define Anum_audit_created_at				26
#define Anum_audit_chain_id					27
#define Anum_audit_chain_seq				28
#define Anum_audit_prev_hash				29
#define Anum_audit_row_hash					30
#define Anum_audit_txid						31
#define Anum_audit_era						32
#define Anum_audit_db_role					33
#define Natts_audit							33
#define Natts_audit_0_2						32	/* before 0.3.0 added db_role */

/* payledger.payments */
#define Anum_payments_id					1
#define Anum_payments_merchant_id			2
#define Anum_payments_customer_id			3
#define Anum_payments_amount				4
#define Anum_payments_currency				5
#define Anum_payments_state					6
#define Anum_payments_source_account		7
#define Anum_payments_merchant_account		8
#define Anum_payments_captured_amount		9
#define Anum_payments_refunded_amount		10
#define Anum_payments_disputed_amount		11
#define Anum_payments_fee_amount			12
#define Anum_payments_hold_id				13
#define Anum_payments_state_before_dispute	14
#define Anum_payments_correlation_id		15
#define Anum_payments_version				16
#define Anum_payments_metadata				17
#define Anum_payments_authorized_at			18
#define Anum_payments_captured_at			19
#define Anum_payments_settlement_id			20
#define Anum_payments_dispute_hold_id		21
#define Anum_payments_created_at			22
#define Anum_payments_updated_at			23
#define Natts_payments						23

/* payledger.metric_counters (since 0.3.0) */
#define Anum_metric_counters_backend	1
#define Anum_metric_counters_metric		2
#define Anum_metric_counters_labels		3
#define Anum_metric_counters_value		4
#define Natts_metric_counters			4
/* its primary key metric_counters_pkey (backend, metric, labels) */
#define Inum_metric_counters_pkey_backend	1
#define Inum_metric_counters_pkey_metric	2
#define Inum_metric_counters_pkey_labels	3

/* payledger.sub_balances (read directly by sub_balances.c) */
#define Anum_sub_balances_account_id		1
#define Anum_sub_balances_slot				2
#define Anum_sub_balances_sub_account_id	3
#define Anum_sub_balances_active			4
#define Anum_sub_balances_created_at		5
#define Natts_sub_balances					5

/* payledger.transfers */
#define Anum_transfers_id				1
#define Anum_transfers_kind				2
#define Anum_transfers_status			3
#define Anum_transfers_reason_code		4
#define Anum_transfers_currency			5
#define Anum_transfers_amount			6
#define Anum_transfers_from_account		7
#define Anum_transfers_to_account		8
#define Anum_transfers_idempotency_key	9
#define Anum_transfers_request_hash		10
#define Anum_transfers_metadata			11
#define Anum_transfers_created_at		12
#define Natts_transfers					12
/* payledger.transfer_result, the composite type transfer functions return */
#define Anum_transfer_result_transfer_id	1
#define Anum_transfer_result_status			2
#define Anum_transfer_result_reason_code	3
#define Anum_transfer_result_replayed		4
#define Natts_transfer_result				4

#endif							/* LAYOUTS_H */
