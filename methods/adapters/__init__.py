"""Every SR method behind the one ``SRMethod`` interface, registered by name: VARSR / AlignVAR (``alignvar``),
interpolation, spandrel networks, output folders of other methods, external commands."""
