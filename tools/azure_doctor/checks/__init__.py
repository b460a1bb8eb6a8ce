"""One module per check group; tools.azure_doctor.run runs them in the documented order."""
