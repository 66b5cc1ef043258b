.PHONY: run test faults

# Run the scheduler on the embedded SQLite default (installs into .venv first).
run:
	scripts/run.sh

# Run the test suite on real services (installs into .venv and starts services first).
test:
	scripts/test.sh

# Run the whole fault suite (killed processes, lost broker, restarted database, bursts at small endpoints; about 13 minutes).
faults:
	scripts/faults.sh
