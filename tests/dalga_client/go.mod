module celerydalga/tests/dalgaclient

go 1.19
