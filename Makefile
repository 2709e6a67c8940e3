# payledger: PGXS build.  The version is read from payledger.control only.

EXTENSION = payledger
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" payledger.control)

MODULE_big = payledger
OBJS = \
	src/payledger.o \
	src/settings.o \
	src/args.o \
	src/spi_plans.o \
	src/uuid_v7.o \
	src/currency.o \
	src/pii.o \
	src/audit.o \
	src/audit_chain.o \
	src/audit_partitions.o \
	src/idempotency.o \
	src/pipeline.o \
	src/accounts.o \
	src/posting.o \
	src/transfer.o \
	src/holds.o \
	src/state_machine.o \
	src/payments.o \
	src/risk.o \
	src/settlement.o \
	src/batch.o \
	src/direct.o \
	src/protect.o \
	src/events.o \
	src/metrics.o \
	src/workers.o \
	src/check.o \
	src/sub_balances.o \
	src/access.o \
	src/reads.o \
	src/notify_worker.o \
	src/ledger_writer.o

DATA = $(wildcard sql/payledger--*.sql)

REGRESS = \
	uuid_v7 \
	accounts \
	transfer \
	transfer_errors \
	transfer_id_reuse \
	table_shape \
	idempotency \
	audit_append_only \
	statement \
	holds \
	payments \
	settlement \
	audit_tamper \
	pii_masking \
	events \
	metrics \
	transfer_legs \
	check_ledger \
	sub_balances \
	audit_partitions \
	upgrade \
	upgrade_0_2_0 \
	context_settings \
	state_machine_cache \
	risk_hook \
	submit_transfer
REGRESS += shard_id
REGRESS_OPTS = --load-extension=payledger

ISOLATION = \
	transfer_no_double_spend \
	transfer_no_deadlock \
	idempotency_same_key_concurrent \
	idempotency_key_across_calls \
	idempotency_keys_batch_order \
	transfer_vs_freeze \
	hold_vs_transfer \
	hold_post_vs_void \
	hold_same_key_concurrent \
	transfer_legs_no_deadlock \
	events_late_commit \
	audit_no_blocking \
	payment_races \
	transfer_repeatable_read \
	hold_expiry_race \
	hot_account \
	hot_account_legs_many \
	hot_account_holds \
	hot_account_capture \
	hot_account_capture_split \
	transfer_many_same_keys \
	audit_partition_routing \
	risk_hook_lock_timeout
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=payledger

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# a change to any header rebuilds every module: they are few and small
$(OBJS): $(wildcard src/*.h)

# pgTAP suite, run with pg_prove against the server in PGHOST/PGPORT.
PGTAP_DB ?= payledger_pgtap
.PHONY: pgtap
pgtap:
	dropdb --if-exists $(PGTAP_DB)
	createdb $(PGTAP_DB)
	psql -X -q -v ON_ERROR_STOP=1 -d $(PGTAP_DB) -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION payledger'
	pg_prove -d $(PGTAP_DB) test/pgtap/*.sql
	dropdb $(PGTAP_DB)

# make dist: payledger-<version>.tar.gz, the files git tracks as they are in
# the working tree, under payledger-<version>/.  Unpacked, it builds and
# installs with make && make install and passes make installcheck.
DIST = $(EXTENSION)-$(EXTVERSION)
EXTRA_CLEAN += $(DIST).tar.gz
.PHONY: dist
dist:
	rm -f $(DIST).tar.gz
	git ls-files -z | xargs -0 tar --transform 's,^,$(DIST)/,' -czf $(DIST).tar.gz
	@echo "wrote $(DIST).tar.gz"
