"""Area radiation monitoring: dose-rate rules, spill logic and room occupancy."""
