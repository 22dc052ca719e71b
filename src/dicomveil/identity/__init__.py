"""Who the patient becomes: keys, keyed pseudonyms and UIDs, date shifts, the crosswalk."""
