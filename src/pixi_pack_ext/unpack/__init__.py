"""Installing a pack: validate untrusted data, extract safely, check packages, install, finish with steps."""
