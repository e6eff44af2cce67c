"""The application assembled: a server of the chosen roles with its interceptors, health,
readiness and the web port (`server`), readiness from the store (`readiness`), and the whole
system on one machine (`demo`). It sits above the services and `rpc/`, whose wire helpers it
puts together; nothing below imports it."""
