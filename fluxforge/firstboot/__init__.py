"""Configure an appliance from its boot partition (`fluxforge firstboot`, fluxforge-firstboot.service).

Why: the user of a flashed image has a laptop and an SD card, not a shell on the box.
They drop `fluxforge/config.yaml` (plus `credentials/`, `hostname`, `authorized_keys`)
on the FAT boot partition; at boot this package imports and validates it, and writes
any error back to the same partition where they will see it (docs/images.md).
"""
