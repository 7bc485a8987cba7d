"""Example workflows, registered by `ops/dev up` (`headrace engine --app examples.app:runtime`)."""
