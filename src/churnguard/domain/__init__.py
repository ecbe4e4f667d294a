"""The CRM data contract, mapping and validation, the time axis and the churn rules."""
